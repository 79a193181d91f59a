"""The Batch API's work: files of requests run in the background through the same routes and
engines as interactive requests, after them (`service` elects the process that runs them,
`runner` runs one batch durably, `lines` is one line's answer and output line); and
`python -m reference_server.batch`, which runs a batch file offline."""

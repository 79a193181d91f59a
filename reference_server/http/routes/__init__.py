"""HTTP routes, one module per operation; each exposes `routes`."""

"""Ways to deploy the reference server beyond one process: Ray Serve (`ray_serve`, `serve.yaml`)."""

"""HTTP in and out: the aiohttp application, ecosystems, upstreams and the CLI."""

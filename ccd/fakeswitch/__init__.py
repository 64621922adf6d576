"""A fake FreeSWITCH: an ESL server with a call model, for tests, the demo and benchmarks."""

"""Redis: the raw client, codec, keys and scripts (redis_store), then one store per concept."""

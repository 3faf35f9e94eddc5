"""State that several gateway processes share: budgets and rate limits in Redis (tapgate_redis)."""

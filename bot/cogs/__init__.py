"""The bot's cogs: each parses input, calls ``engine.tables`` and renders the result."""

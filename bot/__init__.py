"""The discord.py frontend: cogs, slash commands, reaction voting and feedback reactions."""

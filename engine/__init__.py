"""The story engine: domain types, game rules and the ports it needs.

It imports nothing of discord, torch, mlflow or aiosqlite, and nothing of the project's other packages.
"""

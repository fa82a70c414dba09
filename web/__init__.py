"""``cyoa web``: play in the browser. A JSON API and a plain HTML/JS page over the engine's session layer
(``engine.tables.Tables``); the package parses requests, calls Tables and renders what it gets back."""

"""Pure policy decisions: names, rules and the engine. No HTTP, no event loop."""

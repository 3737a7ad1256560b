"""Policy rules, one concern per module; each maps (reference, facts) to a verdict."""

"""Operation sets: the pluggy hook specifications, the registry and the core-facing handle."""

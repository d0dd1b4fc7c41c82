"""Operation sets: the pluggy hook specifications (the plugin authors' contract), the registry
that finds sets and resolves the chosen one into the core's ``DamonOperations`` record, and
``common``, what every set shares (the kernel's ``ops-common.c``)."""

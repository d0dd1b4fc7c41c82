"""damond: Linux's DAMON and DAMOS rebuilt as a user-space daemon.

The package follows the kernel's three-way split (see DESIGN.md in the shared reference):
``damond.core`` holds the pure monitoring and scheme algorithms, ``damond.ops`` and
``damond.plugins`` the operation sets, and the interface modules translate user input.
"""

__version__ = "0.1.0"

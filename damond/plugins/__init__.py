"""damond's built-in operation sets (pluggy plugins implementing ``damond.ops.hookspecs``)."""

"""The pure core: regions, the monitoring iteration and DAMOS. No I/O, no trio, no clock reads."""

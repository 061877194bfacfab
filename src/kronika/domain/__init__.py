"""Pure domain values: events, expected versions, conditions. No I/O."""

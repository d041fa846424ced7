"""Planning: the recorded state refreshed (refresh), compared with the configuration
(planner, diff) into a Plan of changes (model); moved/removed blocks, lifecycle rules,
imports and -target on top."""

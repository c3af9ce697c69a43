"""The reconcile layer: observe children, act idempotently, write status once per pass."""

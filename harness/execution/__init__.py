"""Executing a run: the plan of units (``plan``), computing one unit (``worker``),
the cache lookup, dispatch and assembly (``scheduler``), where units run
(``engines``, ``dask_engine``) and the salience cache (``cache``)."""

"""The HTML report of a run: the page (``page``), its figures (``figures``), salience
overlays (``overlay``) and the example maps a run keeps for it (``examples``)."""

"""Results of a run: the long typed scores (``schema``), the wide leaderboard view
(``leaderboard``) and the CI gate over them (``gate``)."""

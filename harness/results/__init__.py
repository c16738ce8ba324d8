"""Results of a run: the long typed scores (``schema``), the model and family pairs
(``comparisons``), the wide leaderboard view (``leaderboard``), the verdicts in words
(``verdicts``) and the CI gate over them (``gate``)."""

"""Small helpers every room uses, and nothing of the project beneath them: the machine (cores, the cache folder),
files written whole or not at all, the progress bar, words for counts."""

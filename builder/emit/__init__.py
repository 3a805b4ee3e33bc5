"""Emit: the per-node artifacts (seed ISO, user-data, HTTP tree) and the output tree that holds them."""

"""Lab grids (sweep) and the end-to-end demo."""

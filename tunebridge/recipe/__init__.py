"""The recipe: its schema, its mapping onto each stack, and its explanation."""

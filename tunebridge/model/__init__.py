"""The model core: ModelSpec, the catalogue, families, dialects, tensor layout and parameter accounting."""

"""One module per scenario, each with `run(ctx)`; `bench.__main__` lists them in table order."""

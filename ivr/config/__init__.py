"""The configuration: strict models (`model`), YAML loading with file:line errors (`load`), checks."""

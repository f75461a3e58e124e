"""export's work for each task that scores what it exports: above modelling (the models) and reporting (the
metrics), which both sit below it. A causal language model's export is modelling/lm_export.py."""

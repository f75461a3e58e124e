"""The model cards written into every registry version (MODEL_CARD.md), one module per kind of model
(classifier.py, language_model.py, multilabel.py) over the helpers they share (shared.py). Above reporting and
training: a card reads training's settings table for the flags that shaped a model."""

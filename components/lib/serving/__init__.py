"""A model behind KServe's REST protocols: request parsing and answers, micro-batching, the kserve.Model."""

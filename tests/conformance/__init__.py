"""One conformance suite that every masking method passes (like torchmetrics' ``MetricTester``): a new method gets
every check by adding one entry to :data:`conformance.methods.METHODS`."""

"""Camera tailgating detection: capture, TFLite person detection, tracking and door-line counts (issue 5)."""

"""The HTTP surface: routing, request and response models, Vonage's error shape, auth."""

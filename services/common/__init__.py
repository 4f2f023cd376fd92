"""The shared core of the three services: settings, errors, Kafka, Avro, the run loop."""

"""What users run after training: prediction, visualisation, export and a local demo page."""

"""What a PyTorch trainer imports to report to the Training Health Monitor."""

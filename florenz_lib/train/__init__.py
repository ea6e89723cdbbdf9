"""Training: optimizer and schedule, online task-language balancing, the study's training runs."""

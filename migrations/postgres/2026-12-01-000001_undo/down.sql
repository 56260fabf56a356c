DROP TABLE checkpoint_changes;
DROP TABLE checkpoints;

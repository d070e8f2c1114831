"""Data formats: what readers give (Batch), media types, one reader and one writer per content type."""

"""Protocol translators: parse → call a core service → serialize."""

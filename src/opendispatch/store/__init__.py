"""Storage: one protocol (`Store`), one implementation per database, versioned migrations."""

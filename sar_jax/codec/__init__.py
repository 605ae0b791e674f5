"""Framework-neutral bitstreams (numpy + constriction): integer coding tables, the entropy coder and
the ``.sarc`` file."""

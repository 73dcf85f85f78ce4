"""The Talos Image Factory twin: schematics (real IDs), versions, extensions, synthetic images."""

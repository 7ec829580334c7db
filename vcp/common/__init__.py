"""What every layer uses: errors, one-line reports, consoles and tables, versions, devices."""

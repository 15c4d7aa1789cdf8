"""ping: the original experiment; every VE pings localhost and must answer every ping."""

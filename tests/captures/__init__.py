"""What the real services answer, as published by them (documentation, annotation files, SDK fixtures):
what the stand-ins and the connectors are checked against."""

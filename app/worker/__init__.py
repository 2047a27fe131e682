"""The Faust worker: app object, tables, agents and HTTP views."""

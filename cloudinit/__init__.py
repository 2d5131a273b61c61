"""Everything that goes onto a droplet: templates, scripts, the agent, and the renderer."""

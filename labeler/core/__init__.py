"""Pure layers: prompt sets, ensemble scoring, few-shot fits and stored scores. Arrays and data in, arrays out; no model, no database."""

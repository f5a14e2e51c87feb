"""DNS for branded access: the records a customer must create, and checks of what is live."""

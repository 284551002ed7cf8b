//! Analytics emits no events: it is a read model. This file keeps the shape every service
//! module has, and says so.

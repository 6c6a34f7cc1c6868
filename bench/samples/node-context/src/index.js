console.log("hello from the node-context sample");
